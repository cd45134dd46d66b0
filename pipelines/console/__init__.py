"""The review console: a small web application over the score, review and labels topics.

`auth` holds logins, sessions, CSRF tokens and the label rate limit (no web framework);
`feed` follows the topics in a thread and keeps bounded in-memory state; `explain`
recomputes a window's reconstruction with the model version that scored it; `app` is
the FastAPI application serving `static/` (plain HTML/JS/CSS, nothing fetched at run
time); `command` is `agad-stream console`.
"""
