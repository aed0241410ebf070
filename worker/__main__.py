"""`python -m worker JOB_ID`: what worker.sh runs on the instance."""

from worker.worker import main

raise SystemExit(main())
