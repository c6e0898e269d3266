"""The web UI: a Gradio app over `tistudio.api` and `tistudio.events`. Gradio is imported only in this
package (app.py and the tab modules); safety.py, jobs.py (with worker.py, its training process),
forms.py and runs.py are plain Python, so their rules are tested without a browser."""
