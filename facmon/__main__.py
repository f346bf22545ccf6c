from facmon.cmd.main import main

raise SystemExit(main())
