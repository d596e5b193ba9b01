"""The container model: its state record, its bundle and the validation of its config."""
