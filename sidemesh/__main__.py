from sidemesh.cli.main import main

main()
