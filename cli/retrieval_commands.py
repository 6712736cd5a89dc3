from hashpa.cli.main import cli
