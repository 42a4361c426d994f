"""The fine-tuning program: the report's Keras CNN and InceptionV3 trained in a Spark barrier task."""
