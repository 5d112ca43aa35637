"""Streamlit entry point: ``streamlit run apps/dashboard/app.py -- RESULTS.json ... [--zoo]``.

The dashboard itself lives in the package (:mod:`auditkit.dashboard_app`), so that an installed
auditkit runs it too (``auditkit dashboard``)."""

from auditkit.dashboard_app import main

main(__file__)
