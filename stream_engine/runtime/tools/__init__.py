"""Tools around a running pipeline: publish, tail, dead-letter replay."""
