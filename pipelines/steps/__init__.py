"""The audit's Beam steps: thin PTransforms and DoFns over batches.

Importing any of them prepares this process as an SDK worker
(``runtime.runners.prepare_worker_process``): a worker imports them as it
unpickles the first step it is given, before it reports any metric, which
is when Prism's metric ids must already be apart from other workers'. A
DoFn's setup is too late: a stage of Beam's own steps can report first.
"""

from pipelines.runtime.runners import prepare_worker_process

prepare_worker_process()
