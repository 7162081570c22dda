"""Data files shipped with compofa (read them with `importlib.resources`).

- `note10_lut/{R}_lookup_table.yaml`: the Samsung Note10 layer latency lookup
  tables of the OFA MobileNetV3 w1.2 network (read by `compofa.lut`).
- `ofa_acc_predictor/acc_predictor.pth`: OFA's ImageNet accuracy predictor.

Both come from the CompOFA authors' repository under the Apache License 2.0;
see `NOTICE` and `LICENSE-CompOFA-Apache-2.0.txt` in this folder.
"""
