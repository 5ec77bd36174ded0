from edgeport.cli.main import main

main()
