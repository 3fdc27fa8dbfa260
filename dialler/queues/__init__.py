"""Who is called next: eligibility, scoring, Redis queues and the batch rebuild (compliance: dialler.compliance)."""
