"""Contains all the data models used in inputs/outputs"""

from .add_heartbeat_body_type_0 import AddHeartbeatBodyType0
from .add_heartbeat_body_type_0_additional_property import (
    AddHeartbeatBodyType0AdditionalProperty,
)
from .blob_info import BlobInfo
from .blob_upload import BlobUpload
from .body_device_authorization import BodyDeviceAuthorization
from .body_device_login import BodyDeviceLogin
from .body_device_login_decision import BodyDeviceLoginDecision
from .body_issue_token import BodyIssueToken
from .body_revoke_token import BodyRevokeToken
from .closure import Closure
from .closure_blobs import ClosureBlobs
from .closure_import import ClosureImport
from .closure_realization import ClosureRealization
from .closure_realization_context import ClosureRealizationContext
from .closure_realization_metrics import ClosureRealizationMetrics
from .closure_request import ClosureRequest
from .complete_upload import CompleteUpload
from .derivation import Derivation
from .derivation_builder import DerivationBuilder
from .derivation_config import DerivationConfig
from .derivation_inputs import DerivationInputs
from .device_authorization_response import DeviceAuthorizationResponse
from .drv_input import DrvInput
from .error_response import ErrorResponse
from .gc_realization import GCRealization
from .gc_report import GCReport
from .gc_request import GCRequest
from .group_config import GroupConfig
from .identity_provider_view import IdentityProviderView
from .import_result import ImportResult
from .job_action_response import JobActionResponse
from .job_event import JobEvent
from .job_heartbeat_response import JobHeartbeatResponse
from .job_heartbeat_response_failed import JobHeartbeatResponseFailed
from .job_info import JobInfo
from .job_search_request import JobSearchRequest
from .job_status import JobStatus
from .job_status_result import JobStatusResult
from .job_status_update import JobStatusUpdate
from .job_status_update_response import JobStatusUpdateResponse
from .job_status_update_response_failed import JobStatusUpdateResponseFailed
from .job_status_update_response_success import JobStatusUpdateResponseSuccess
from .job_summary_request import JobSummaryRequest
from .jwk_set import JWKSet
from .jwk_set_keys_item import JWKSetKeysItem
from .kill_response import KillResponse
from .list_pipelines_status_type_0 import ListPipelinesStatusType0
from .live_status import LiveStatus
from .matcher import Matcher
from .matcher_kind import MatcherKind
from .matcher_mode_type_0 import MatcherModeType0
from .metadata import Metadata
from .missing_blobs_request import MissingBlobsRequest
from .missing_blobs_response import MissingBlobsResponse
from .missing_object import MissingObject
from .multipart_upload import MultipartUpload
from .o_auth_error_response import OAuthErrorResponse
from .open_id_configuration import OpenIDConfiguration
from .pin_info import PinInfo
from .pin_request import PinRequest
from .pipeline_events import PipelineEvents
from .pipeline_info import PipelineInfo
from .pipeline_info_counts import PipelineInfoCounts
from .pipeline_info_status import PipelineInfoStatus
from .pipeline_page import PipelinePage
from .pipeline_plan import PipelinePlan
from .pipeline_submission import PipelineSubmission
from .pipeline_submission_derivations import PipelineSubmissionDerivations
from .pipeline_submission_secrets import PipelineSubmissionSecrets
from .pipeline_summary import PipelineSummary
from .pipeline_summary_counts import PipelineSummaryCounts
from .pipeline_summary_status import PipelineSummaryStatus
from .planned_stage import PlannedStage
from .planned_stage_action import PlannedStageAction
from .provenance import Provenance
from .provenance_realizations import ProvenanceRealizations
from .provenance_trees import ProvenanceTrees
from .provenance_trees_additional_property import ProvenanceTreesAdditionalProperty
from .quota_config import QuotaConfig
from .ready_status import ReadyStatus
from .realization_info import RealizationInfo
from .realization_info_context import RealizationInfoContext
from .realization_info_metrics import RealizationInfoMetrics
from .realization_size import RealizationSize
from .retried_job import RetriedJob
from .retry_response import RetryResponse
from .retry_response_skipped import RetryResponseSkipped
from .scheduling import Scheduling
from .search_jobs_response_200_item import SearchJobsResponse200Item
from .search_spec import SearchSpec
from .served_config import ServedConfig
from .served_config_vos import ServedConfigVos
from .service_account_view import ServiceAccountView
from .set_job_statuses_body import SetJobStatusesBody
from .single_upload import SingleUpload
from .single_upload_headers import SingleUploadHeaders
from .size_report import SizeReport
from .size_request import SizeRequest
from .sort_spec import SortSpec
from .stage_info import StageInfo
from .startup_status import StartupStatus
from .status_history_entry import StatusHistoryEntry
from .submit_response import SubmitResponse
from .summarize_jobs_response_200_item import SummarizeJobsResponse200Item
from .token_response import TokenResponse
from .tree_input import TreeInput
from .upload_part_url import UploadPartURL
from .upload_plans import UploadPlans
from .user_config import UserConfig
from .user_info import UserInfo
from .validation_error_response import ValidationErrorResponse
from .validation_problem import ValidationProblem
from .verify_report import VerifyReport
from .vo_view import VOView
from .vo_view_groups import VOViewGroups
from .vo_view_service_accounts import VOViewServiceAccounts
from .vo_view_users import VOViewUsers

__all__ = (
    "AddHeartbeatBodyType0",
    "AddHeartbeatBodyType0AdditionalProperty",
    "BlobInfo",
    "BlobUpload",
    "BodyDeviceAuthorization",
    "BodyDeviceLogin",
    "BodyDeviceLoginDecision",
    "BodyIssueToken",
    "BodyRevokeToken",
    "Closure",
    "ClosureBlobs",
    "ClosureImport",
    "ClosureRealization",
    "ClosureRealizationContext",
    "ClosureRealizationMetrics",
    "ClosureRequest",
    "CompleteUpload",
    "Derivation",
    "DerivationBuilder",
    "DerivationConfig",
    "DerivationInputs",
    "DeviceAuthorizationResponse",
    "DrvInput",
    "ErrorResponse",
    "GCRealization",
    "GCReport",
    "GCRequest",
    "GroupConfig",
    "IdentityProviderView",
    "ImportResult",
    "JobActionResponse",
    "JobEvent",
    "JobHeartbeatResponse",
    "JobHeartbeatResponseFailed",
    "JobInfo",
    "JobSearchRequest",
    "JobStatus",
    "JobStatusResult",
    "JobStatusUpdate",
    "JobStatusUpdateResponse",
    "JobStatusUpdateResponseFailed",
    "JobStatusUpdateResponseSuccess",
    "JobSummaryRequest",
    "JWKSet",
    "JWKSetKeysItem",
    "KillResponse",
    "ListPipelinesStatusType0",
    "LiveStatus",
    "Matcher",
    "MatcherKind",
    "MatcherModeType0",
    "Metadata",
    "MissingBlobsRequest",
    "MissingBlobsResponse",
    "MissingObject",
    "MultipartUpload",
    "OAuthErrorResponse",
    "OpenIDConfiguration",
    "PinInfo",
    "PinRequest",
    "PipelineEvents",
    "PipelineInfo",
    "PipelineInfoCounts",
    "PipelineInfoStatus",
    "PipelinePage",
    "PipelinePlan",
    "PipelineSubmission",
    "PipelineSubmissionDerivations",
    "PipelineSubmissionSecrets",
    "PipelineSummary",
    "PipelineSummaryCounts",
    "PipelineSummaryStatus",
    "PlannedStage",
    "PlannedStageAction",
    "Provenance",
    "ProvenanceRealizations",
    "ProvenanceTrees",
    "ProvenanceTreesAdditionalProperty",
    "QuotaConfig",
    "ReadyStatus",
    "RealizationInfo",
    "RealizationInfoContext",
    "RealizationInfoMetrics",
    "RealizationSize",
    "RetriedJob",
    "RetryResponse",
    "RetryResponseSkipped",
    "Scheduling",
    "SearchJobsResponse200Item",
    "SearchSpec",
    "ServedConfig",
    "ServedConfigVos",
    "ServiceAccountView",
    "SetJobStatusesBody",
    "SingleUpload",
    "SingleUploadHeaders",
    "SizeReport",
    "SizeRequest",
    "SortSpec",
    "StageInfo",
    "StartupStatus",
    "StatusHistoryEntry",
    "SubmitResponse",
    "SummarizeJobsResponse200Item",
    "TokenResponse",
    "TreeInput",
    "UploadPartURL",
    "UploadPlans",
    "UserConfig",
    "UserInfo",
    "ValidationErrorResponse",
    "ValidationProblem",
    "VerifyReport",
    "VOView",
    "VOViewGroups",
    "VOViewServiceAccounts",
    "VOViewUsers",
)
