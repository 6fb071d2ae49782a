"""A character-level LSTM language model trained with PyTorch, generating with fastrnn."""
