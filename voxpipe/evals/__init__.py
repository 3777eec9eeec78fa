"""Offline evals: scenario files, the scripted caller's timing, and graders over call artifacts.

Sans-I/O: the runner (:mod:`voxpipe.pipelines.eval_run`) places the calls;
everything here reads files or plain data and decides.
"""
