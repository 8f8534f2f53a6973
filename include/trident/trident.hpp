#pragma once
/// \file trident/trident.hpp
/// Everything commonly needed from trident, through narrow ATen/frontend headers only (never the catch-all
/// LibTorch header).

#include <trident/backbone/frozen_batch_norm.hpp>
#include <trident/backbone/resnet.hpp>
#include <trident/config.hpp>
#include <trident/core/identity.hpp>
#include <trident/core/threads.hpp>
#include <trident/eval/average_precision.hpp>
#include <trident/eval/detection.hpp>
#include <trident/eval/search.hpp>
#include <trident/losses/part.hpp>
#include <trident/losses/reid.hpp>
#include <trident/losses/weighting.hpp>
#include <trident/ops/anchors.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/ops/nms.hpp>
#include <trident/ops/roi_align.hpp>
#include <trident/roi/pooler.hpp>
