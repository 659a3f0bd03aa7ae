"""`tribunal bench peers`: Tribunal beside a peer framework running the same topology (README.md)."""
