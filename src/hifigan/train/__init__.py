"""Training: distributed helpers and the Trainer (discriminator step, generator step, loop)."""
