"""STG-CMA Studio: the Gradio app over the ``stgcma`` inference API (UI only, no model logic).

``app.main.build_demo`` assembles the tabs; ``app.py`` at the repository root launches it. The app
talks to the library through ``stgcma.inference.Predictor`` (paths, numpy and dicts) and
``stgcma.report.write_report``; training runs as a separate process managed by ``app.jobs``.
"""
