from userloop.cli import app

app()
