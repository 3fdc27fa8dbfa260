"""Development-only code: the local stack (``make run``/``make down``), the local stand-ins for
infrastructure that it and the test harness start, the replica's demo data generator and the demo
accounts. The product (dialler, api, workflows, activities, workers) never imports it: it plays the
main claims app's part and the operator's infrastructure on a developer's machine."""
