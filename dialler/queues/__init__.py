"""Who is called next: eligibility, compliance gates, scoring, Redis queues and the batch rebuild."""
