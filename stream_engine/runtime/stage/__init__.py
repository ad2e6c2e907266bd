"""The message path of one stage: bytes in, a decision or an envelope out."""
