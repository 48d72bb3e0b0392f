"""Tessera's dashboard: per-job views of ``fl.status``, ``fl.results`` and ``fl.logs``, kept in a
database of its own (:mod:`dashboard.store`).

A JSON API (``/api/jobs``…) and small self-contained web pages, served by
``python -m dashboard --env-file deploy/env/party-10000.env``. See :mod:`dashboard.app`.
"""
