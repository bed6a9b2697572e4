"""Chat: turning a conversation into the prompt text a model was trained on."""
