"""The reporting wing: tables, comparisons and pages from finished run folders.

- :mod:`esx.reporting.runs`: the runs under a folder, one row per resolved
  experiment, and the runs that did not finish;
- :mod:`esx.reporting.tables`: classification, groups, explanations, component
  tables, paired comparisons, per-run intervals (records, no formatting);
- :mod:`esx.reporting.text`: the numbers as text, Markdown tables and CSV files;
- :mod:`esx.reporting.plots`: the figures;
- :mod:`esx.reporting.html`: a run's ``report.html`` and a folder's;
- :mod:`esx.reporting.report`: ``esx report``.

Training does not import this package: the command line writes a run's page when
the run has finished. Metric names and definitions come from :mod:`esx.glossary`.
"""
