"""The objective of Gatys et al.: losses, masks, colour modes, input checks and resampling, the
static objective and its terms, and the targets (content features, style Gram matrices)."""
