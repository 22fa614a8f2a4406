"""Point labels: the only training labels of POTAL (one time stamp + class per action instance)."""
