"""`tribunal demo`: the main job on a sample, cascade beside judge-only, and its report.

`run` plans and runs the demo, `measure` runs the pipeline's passes and collects their labels,
`report` computes the figures, `report_view` prints them and renders the HTML (`svg` draws).
"""
