"""MSB-RNN's video blocks (thesis chapter 5): chunking and per-chunk targets, optical-flow
backends, pixel trajectories vs stacked flow, the flow-magnitude tracker and
person-centric crops, a small CNN per stream, multi-stream fusion. Independent of the other layers."""

from scalekit.video.chunks import Chunk, chunk_centres, chunk_frames, chunk_labels, read_video_frames, resample_indices
from scalekit.video.flow import FlowEstimator, OpenCVFlow, TorchFlow
from scalekit.video.streams import MultiStream, StreamCNN, stream_inputs
from scalekit.video.tracker import FlowTracker, crop_boxes
from scalekit.video.trajectories import TrajectoryConv, pixel_trajectories, stacked_flow

__all__ = ["Chunk", "chunk_frames", "chunk_centres", "chunk_labels", "resample_indices", "read_video_frames",
           "FlowEstimator", "TorchFlow", "OpenCVFlow", "pixel_trajectories", "stacked_flow", "TrajectoryConv",
           "FlowTracker", "crop_boxes", "StreamCNN", "MultiStream", "stream_inputs"]
