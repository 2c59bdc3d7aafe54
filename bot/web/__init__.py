"""The web service: the Flask app factory, webhook routes and intake, health, metrics and run pages."""
