"""Deployment tooling for agentstream (not deployed itself: Chalice packages only app.py and chalicelib/).

``data.json`` holds the data resources, alarms and user pool, ``page.json`` the chat page's bucket
and CloudFront distribution, ``merge.json`` the app's side of the packaged stack; ``stack.py``
composes and packages them offline; ``deploy.py`` runs the ``chalice deploy`` path against AWS;
``page.py`` publishes the page to its bucket.
"""
