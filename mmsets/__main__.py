from mmsets.cli import main

raise SystemExit(main())
