"""Training: one trial = one fine-tuning run of a base model on one mixture, on any backend and layout.

- `task`: the train stage (`run_train`): trains, checks the exports, writes trials/<id>/trial.json + marker.
- `job`: `TrainJob`, the trial resolved from the study; `loop`: `train(job)`, resume/step/export/checkpoint/log.
- `backend`: the `Backend` protocol and `build_backend`; implementations `megatron/backend.py`, `hf_backend.py`,
  `deepspeed_backend.py`.
- `schedule` (batch plan, LR), `batching` (rows, data order), `weights` (initial weights), `resume` (resume
  checkpoints), `export` (HF folders for evaluation), `step_log` (log.parquet, MFU, progress).
- `presets`: model shapes (torch-free, used by planning).

Importing this package imports nothing heavy; torch, megatron-core and DeepSpeed load with the modules that need
them.
"""
