from esx.cli import main

main()
