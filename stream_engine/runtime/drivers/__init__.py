"""Stage drivers: how a stage consumes, produces and commits (aiokafka batch, faust)."""
