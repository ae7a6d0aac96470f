from mav.cli import main

main()
