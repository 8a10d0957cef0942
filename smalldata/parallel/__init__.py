"""What the stages share to run on several MPI ranks: agreement, stop signals, progress, node memory.

The base layer below ``calib``, ``boz``, ``sums`` and ``pipeline``: it imports none of them.
``mpi`` agreement between ranks and batch splitting, ``shutdown`` stop signals,
``progress`` progress and stop messages between ranks, ``sharedmem`` memory shared by the
ranks of a node.
"""
