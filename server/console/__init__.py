"""The browser console at / on the HTTP port: its page and files (static/), and the two JSON documents
the page reads besides the Open Inference Protocol's own routes (service.py, figures.py)."""
