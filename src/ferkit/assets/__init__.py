"""Package data: the YuNet face detector (MIT, see YUNET-LICENSE.txt) and the bundled default model."""
