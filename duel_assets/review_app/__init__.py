"""The review page served by `duel-assets review`: Starlette routes over ``duel_assets.lib.review``,
Jinja2 templates under ``duel_assets/templates/review/``, a stylesheet and a script under
``duel_assets/static/review/``."""
