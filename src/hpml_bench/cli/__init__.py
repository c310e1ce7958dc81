"""The commands: one module each, parsing its arguments and calling the feature package;
main.py dispatches (`hpml <command>`)."""
