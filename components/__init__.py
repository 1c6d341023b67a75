"""Building blocks: each stage is a plain-Python task plus a thin KFP component."""
