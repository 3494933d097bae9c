"""The app with stock flask-sse's blueprint mounted too, so both are measured in one process."""

from flask_sse import sse as stock_sse

from microblog import create_app

app = create_app()
# Stock flask-sse: the channel comes from the query string and there is no authentication.
app.register_blueprint(stock_sse, url_prefix="/stock-stream")
