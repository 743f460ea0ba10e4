from batchplan.cli.main import main

main()
