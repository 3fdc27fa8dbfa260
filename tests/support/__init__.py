"""Stand-ins for outside services that tests cannot reach, speaking their real wire formats."""
