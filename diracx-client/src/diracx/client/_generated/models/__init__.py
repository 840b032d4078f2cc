"""Contains all the data models used in inputs/outputs"""

from .blob_info import BlobInfo
from .blob_upload import BlobUpload
from .complete_upload import CompleteUpload
from .derivation import Derivation
from .derivation_builder import DerivationBuilder
from .derivation_config import DerivationConfig
from .derivation_inputs import DerivationInputs
from .drv_input import DrvInput
from .error_response import ErrorResponse
from .job_event import JobEvent
from .job_info import JobInfo
from .job_status import JobStatus
from .kill_response import KillResponse
from .live_status import LiveStatus
from .matcher import Matcher
from .metadata import Metadata
from .missing_blobs_request import MissingBlobsRequest
from .missing_blobs_response import MissingBlobsResponse
from .multipart_upload import MultipartUpload
from .pipeline_events import PipelineEvents
from .pipeline_info import PipelineInfo
from .pipeline_info_counts import PipelineInfoCounts
from .pipeline_info_status import PipelineInfoStatus
from .pipeline_submission import PipelineSubmission
from .pipeline_submission_derivations import PipelineSubmissionDerivations
from .pipeline_submission_secrets import PipelineSubmissionSecrets
from .ready_status import ReadyStatus
from .realization_info import RealizationInfo
from .realization_info_context import RealizationInfoContext
from .realization_info_metrics import RealizationInfoMetrics
from .scheduling import Scheduling
from .single_upload import SingleUpload
from .single_upload_headers import SingleUploadHeaders
from .stage_info import StageInfo
from .status_history_entry import StatusHistoryEntry
from .submit_response import SubmitResponse
from .tree_input import TreeInput
from .upload_part_url import UploadPartURL
from .upload_plans import UploadPlans
from .validation_error_response import ValidationErrorResponse
from .validation_problem import ValidationProblem

__all__ = (
    "BlobInfo",
    "BlobUpload",
    "CompleteUpload",
    "Derivation",
    "DerivationBuilder",
    "DerivationConfig",
    "DerivationInputs",
    "DrvInput",
    "ErrorResponse",
    "JobEvent",
    "JobInfo",
    "JobStatus",
    "KillResponse",
    "LiveStatus",
    "Matcher",
    "Metadata",
    "MissingBlobsRequest",
    "MissingBlobsResponse",
    "MultipartUpload",
    "PipelineEvents",
    "PipelineInfo",
    "PipelineInfoCounts",
    "PipelineInfoStatus",
    "PipelineSubmission",
    "PipelineSubmissionDerivations",
    "PipelineSubmissionSecrets",
    "ReadyStatus",
    "RealizationInfo",
    "RealizationInfoContext",
    "RealizationInfoMetrics",
    "Scheduling",
    "SingleUpload",
    "SingleUploadHeaders",
    "StageInfo",
    "StatusHistoryEntry",
    "SubmitResponse",
    "TreeInput",
    "UploadPartURL",
    "UploadPlans",
    "ValidationErrorResponse",
    "ValidationProblem",
)
