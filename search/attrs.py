"""Names of what regsearch stores on studies and trials besides the params (space.py).

Every module reads and writes these attributes through the names here, so that a study made by
one version stays readable by the next.
"""

# Study user attrs.
SETTINGS_ATTR = "settings"  # the task's settings, checked on resume
SOURCE_ATTR = "task_source"  # a task file's path and sha256 (search/task_file.py)

# Trial user attrs.
BASELINE_ATTR = "baseline"  # the name of the baseline a trial measures
START_DESIGN_ATTR = "start_design"  # the trial's index in the study's start design
APPLIED_ATTR = "regularizers"  # the values a trial applies, "off" spelled out
FAIL_REASON_ATTR = "fail_reason"  # why a trial failed, in words
AT_CHANCE_ATTR = "at_chance"  # pruned after its first epoch at the loss of guessing
EPOCHS_RUN_ATTR = "epochs_run"  # epochs trained (a pruned trial's too)
STOPPED_EARLY_ATTR = "stopped_early"  # whether early stopping ended the trial
SECONDS_ATTR = "seconds"  # training time of the trial
TRAIN_CURVE_ATTR = "train_loss_curve"  # the training loss of every epoch
BEST_EPOCH_ATTR = "best_epoch"  # the epoch of the lowest validation loss, counted from 1
TRAIN_LOSS_ATTR = "train_loss"  # the training loss at the best epoch
VAL_ACCURACY_ATTR = "val_accuracy"  # classification: validation accuracy at the best epoch
TEST_LOSS_ATTR = "test_loss"  # classification: test loss of the best epoch's model
TEST_ACCURACY_ATTR = "test_accuracy"  # classification: test accuracy of that model
TEST_MSE_ATTR = "test_mse"  # regression: test MSE of the best epoch's model

# Study system attrs.
WORKERS_ATTR = "regsearch:workers"  # how many workers have joined the study
