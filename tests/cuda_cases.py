"""Shapes and options of the CUDA tests, shared by test_cuda.py (the real
kernels on a GPU) and test_cuda_emulation.py (the same kernel code on the CPU)."""

# (N, C, H, W, K, kh, kw, stride, padding, dilation, groups, bias): each picks
# out a path of the kernels.
CONV_CASES = {
    "3x3": (2, 16, 12, 13, 32, 3, 3, 1, 1, 1, 1, True),
    "partial_chunks_two_n_tiles_stride2": (3, 20, 15, 11, 70, 3, 3, 2, 1, 1, 1, True),
    "rgb_7x7_flat_k": (2, 3, 23, 21, 8, 7, 7, 2, 3, 1, 1, True),
    "rgb_11x11_stride4_two_chunks": (2, 3, 35, 37, 20, 11, 11, 4, 2, 1, 1, True),
    "four_channels_two_tiles_wide": (2, 4, 19, 40, 18, 3, 5, (2, 1), (1, 2), 1, 1, False),
    "1x1_stride2_unreached_inputs": (2, 24, 10, 9, 16, 1, 1, 2, 0, 1, 1, False),
    "dilated_asymmetric": (2, 18, 14, 16, 12, 3, 5, (2, 3), (2, 1), (1, 2), 1, True),
    "groups2_flat_k": (2, 16, 9, 9, 24, 3, 3, 1, 1, 1, 2, True),
    "groups4": (2, 64, 8, 8, 96, 3, 3, 1, 1, 1, 4, False),
    "depthwise": (2, 32, 11, 12, 32, 3, 3, 1, 1, 1, 32, True),
    "depthwise_multiplier2_strided_dilated": (2, 16, 11, 12, 32, 3, 3, 2, 1, 2, 16, True),
    "one_input_channel": (2, 1, 13, 13, 6, 5, 5, 1, 2, 1, 1, True),
    "depthwise_7x7_many_chunks": (24, 3, 15, 14, 6, 7, 7, 2, 3, 1, 3, True),
    "depthwise_5x5_dilated_unpadded": (2, 4, 17, 16, 4, 5, 5, (1, 2), 0, (2, 1), 4, False),
    "depthwise_rectangular": (2, 6, 9, 10, 12, 3, 5, 1, (1, 2), 1, 6, True),
    "stride_over_kernel": (2, 8, 7, 7, 4, 2, 2, 3, 0, 1, 1, True),
    "split_k": (8, 16, 32, 32, 16, 3, 3, 1, 1, 1, 1, True),
    "kernel_over_input": (1, 17, 3, 4, 9, 5, 5, 1, 2, 1, 1, True),
    "1x1_three_n_tiles": (2, 40, 6, 7, 130, 1, 1, 1, 0, 1, 1, True),
    "many_m_tiles": (70, 16, 5, 5, 16, 3, 3, 1, 1, 1, 1, False),
    "dilation3_kernel4_stride2": (2, 16, 19, 17, 16, 4, 4, 2, 3, 3, 1, True),
}


POOL_INPUT = (3, 5, 17, 19)

MAX_POOL_CASES = {
    "3x3_s2_p1": dict(kernel_size=3, stride=2, padding=1),
    "2x2": dict(kernel_size=2),
    "dilated": dict(kernel_size=3, stride=1, padding=1, dilation=2),
    "asymmetric_ceil": dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), ceil_mode=True),
    "5x5_s3_ceil": dict(kernel_size=5, stride=3, padding=2, ceil_mode=True),
    "stride_over_kernel": dict(kernel_size=2, stride=3),
    "dilated_ceil": dict(kernel_size=(2, 3), stride=2, padding=1, dilation=(3, 2), ceil_mode=True),
}

AVG_POOL_CASES = {
    "3x3_s2_p1": dict(kernel_size=3, stride=2, padding=1),
    "3x3_s2_p1_exclude_pad": dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    "ceil_pad": dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    "ceil_pad_exclude": dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    "divisor_override": dict(kernel_size=3, stride=2, padding=1, divisor_override=5),
    "asymmetric": dict(kernel_size=(2, 4), stride=(1, 3), padding=(1, 2)),
    "stride_over_kernel": dict(kernel_size=2, stride=3),
}

ADAPTIVE_SIZES = {"5x7": (5, 7), "1x1": (1, 1), "upsample": (20, 25), "same": (17, 19), "3x19": (3, 19)}
