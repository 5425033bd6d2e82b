"""The web app: pages behind email links, staff forms, the dashboard and the JSON API."""
