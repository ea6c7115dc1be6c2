"""``python -m facerec_cli``: the same as the ``facerec`` script."""

from facerec_cli.main import app

app(prog_name="facerec")
