"""Hypernetwork option values, in plain Python so the command line can offer them without loading
torch (tistudio --help stays instant)."""

# name -> torch.nn class name. A1111 accepts its seven named ones ("swish" is Hardswish there) and
# any class in torch.nn.modules.activation by its lowercased name; these are the ones of that set
# that keep the width and build without arguments.
ACTIVATIONS = {
    "linear": "Identity", "relu": "ReLU", "leakyrelu": "LeakyReLU", "elu": "ELU", "swish": "Hardswish",
    "tanh": "Tanh", "sigmoid": "Sigmoid", "softsign": "Softsign", "mish": "Mish", "gelu": "GELU",
    "silu": "SiLU", "selu": "SELU", "celu": "CELU", "softplus": "Softplus", "hardtanh": "Hardtanh",
    "hardsigmoid": "Hardsigmoid", "hardswish": "Hardswish", "relu6": "ReLU6", "logsigmoid": "LogSigmoid",
    "prelu": "PReLU", "tanhshrink": "Tanhshrink", "softshrink": "Softshrink", "hardshrink": "Hardshrink",
}
# --init -> the name A1111 stores in `weight_initialization`.
INITS = {"normal": "Normal", "xavier": "XavierUniform", "xavier-normal": "XavierNormal",
         "kaiming": "KaimingUniform", "kaiming-normal": "KaimingNormal"}
# ComfyUI rebuilds each stack from the `.weight` keys alone (Linear, then LayerNorm when
# is_layer_norm) and knows only these activations; anything else it refuses ("Unsupported
# Hypernetwork format"). An activation with weights (prelu) would also break its key walk.
COMFY_ACTIVATIONS = ("linear", "relu", "leakyrelu", "elu", "swish", "tanh", "sigmoid", "softsign", "mish")
