"""Contains all the data models used in inputs/outputs"""

from .blob_info import BlobInfo
from .derivation import Derivation
from .derivation_builder import DerivationBuilder
from .derivation_config import DerivationConfig
from .derivation_inputs import DerivationInputs
from .drv_input import DrvInput
from .error_response import ErrorResponse
from .job_event import JobEvent
from .job_info import JobInfo
from .job_status import JobStatus
from .live_status import LiveStatus
from .matcher import Matcher
from .metadata import Metadata
from .missing_blobs_request import MissingBlobsRequest
from .missing_blobs_response import MissingBlobsResponse
from .pipeline_events import PipelineEvents
from .pipeline_info import PipelineInfo
from .pipeline_info_counts import PipelineInfoCounts
from .pipeline_info_status import PipelineInfoStatus
from .pipeline_submission import PipelineSubmission
from .pipeline_submission_derivations import PipelineSubmissionDerivations
from .ready_status import ReadyStatus
from .realization_info import RealizationInfo
from .realization_info_context import RealizationInfoContext
from .realization_info_metrics import RealizationInfoMetrics
from .scheduling import Scheduling
from .stage_info import StageInfo
from .status_history_entry import StatusHistoryEntry
from .submit_response import SubmitResponse
from .tree_input import TreeInput
from .validation_error_response import ValidationErrorResponse
from .validation_problem import ValidationProblem

__all__ = (
    "BlobInfo",
    "Derivation",
    "DerivationBuilder",
    "DerivationConfig",
    "DerivationInputs",
    "DrvInput",
    "ErrorResponse",
    "JobEvent",
    "JobInfo",
    "JobStatus",
    "LiveStatus",
    "Matcher",
    "Metadata",
    "MissingBlobsRequest",
    "MissingBlobsResponse",
    "PipelineEvents",
    "PipelineInfo",
    "PipelineInfoCounts",
    "PipelineInfoStatus",
    "PipelineSubmission",
    "PipelineSubmissionDerivations",
    "ReadyStatus",
    "RealizationInfo",
    "RealizationInfoContext",
    "RealizationInfoMetrics",
    "Scheduling",
    "StageInfo",
    "StatusHistoryEntry",
    "SubmitResponse",
    "TreeInput",
    "ValidationErrorResponse",
    "ValidationProblem",
)
