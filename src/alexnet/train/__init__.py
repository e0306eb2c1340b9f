"""Training (paper section 5): config, loop, optimizer and schedules, checkpoints, DDP, towers."""
